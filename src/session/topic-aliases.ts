/** UTF-16 units of the topic names one connection's outbound aliases keep, at most. */
export const OUTBOUND_ALIAS_CHARS = 64 * 1024;

/**
 * Outbound topic aliases (MQTT 5 §3.3.2.3.4): a client that sent a Topic Alias Maximum in
 * CONNECT gets each topic's name once, with an alias, and after that the alias alone
 * ([MQTT-3.3.2-10]: never above its maximum; mappings live as long as the network connection).
 * Aliases are handed out first come, first served, and kept; once all are taken, or the names
 * kept reach OUTBOUND_ALIAS_CHARS (a name may be 65,535 bytes: 65,535 of them would be gigabytes
 * held for one connection), further topics go out by name.
 */
export class OutboundAliases {
  private readonly byTopic = new Map<string, number>();
  private chars = 0;

  constructor(readonly maximum: number) {}

  /** The alias `topic` has, or the one it would get (negative: it would be new), or 0 (none left). */
  lookup(topic: string): number {
    const known = this.byTopic.get(topic);
    if (known !== undefined) return known;
    return this.byTopic.size < this.maximum && this.chars + topic.length <= OUTBOUND_ALIAS_CHARS ? -(this.byTopic.size + 1) : 0;
  }

  /** The PUBLISH that names `topic` with new alias `alias` was written: the client knows it now. */
  remember(topic: string, alias: number): void {
    this.byTopic.set(topic, alias);
    this.chars += topic.length;
  }
}
