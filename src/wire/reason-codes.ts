/** MQTT 5 reason codes (spec §2.4) and the MQTT 3.1.1 CONNACK return codes they map to. */
export const RC = {
  Success: 0x00,
  GrantedQoS1: 0x01,
  GrantedQoS2: 0x02,
  DisconnectWithWill: 0x04,
  NoMatchingSubscribers: 0x10,
  NoSubscriptionExisted: 0x11,
  UnspecifiedError: 0x80,
  MalformedPacket: 0x81,
  ProtocolError: 0x82,
  ImplementationSpecificError: 0x83,
  UnsupportedProtocolVersion: 0x84,
  ClientIdentifierNotValid: 0x85,
  BadUserNameOrPassword: 0x86,
  NotAuthorized: 0x87,
  ServerUnavailable: 0x88,
  ServerBusy: 0x89,
  Banned: 0x8a,
  ServerShuttingDown: 0x8b,
  KeepAliveTimeout: 0x8d,
  SessionTakenOver: 0x8e,
  TopicFilterInvalid: 0x8f,
  TopicNameInvalid: 0x90,
  PacketIdentifierInUse: 0x91,
  PacketIdentifierNotFound: 0x92,
  ReceiveMaximumExceeded: 0x93,
  TopicAliasInvalid: 0x94,
  PacketTooLarge: 0x95,
  QuotaExceeded: 0x97,
  AdministrativeAction: 0x98,
  PayloadFormatInvalid: 0x99,
  RetainNotSupported: 0x9a,
  QoSNotSupported: 0x9b,
  SharedSubscriptionsNotSupported: 0x9e,
  SubscriptionIdentifiersNotSupported: 0xa1,
  WildcardSubscriptionsNotSupported: 0xa2,
} as const;

export type ReasonCode = (typeof RC)[keyof typeof RC];

/** MQTT 3.1.1 CONNACK return codes (§3.2.2.3). */
export const V3_CONNACK = {
  Accepted: 0,
  UnacceptableProtocolVersion: 1,
  IdentifierRejected: 2,
  ServerUnavailable: 3,
  BadUserNameOrPassword: 4,
  NotAuthorized: 5,
} as const;

/** Map a v5 CONNACK reason code onto the closest 3.1.1 return code. */
export function connackCodeV3(rc: number): number {
  switch (rc) {
    case RC.Success:
      return V3_CONNACK.Accepted;
    case RC.UnsupportedProtocolVersion:
      return V3_CONNACK.UnacceptableProtocolVersion;
    case RC.ClientIdentifierNotValid:
      return V3_CONNACK.IdentifierRejected;
    case RC.BadUserNameOrPassword:
      return V3_CONNACK.BadUserNameOrPassword;
    case RC.NotAuthorized:
    case RC.Banned:
      return V3_CONNACK.NotAuthorized;
    default:
      return V3_CONNACK.ServerUnavailable;
  }
}

/** A protocol violation: the connection is closed with `code` (sent as DISCONNECT on v5). */
export class ProtocolViolation extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = 'ProtocolViolation';
  }
}
