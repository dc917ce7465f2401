/**
 * Authorisation from the ACL file (`auth.acl_file`, auth/acl.ts) as gates: checked before the
 * embedding app's own authorizePublish / authorizeSubscribe gates, which run only for what the
 * file allows. Each denial is counted. `reload()` (SIGHUP) reads the file again; a file that
 * does not parse leaves the rules in force as they were.
 */
import type { ClientInfo, Gates, Refusals } from '../hooks/index.js';
import { RC } from '../wire/reason-codes.js';
import { AclFile, type ClientAcl } from './acl.js';

export class AccessControl {
  private file: AclFile;
  private generation = 0;
  /** Per connection (the ClientInfo object gates and sessions are given), rebuilt after a reload. */
  private readonly cache = new WeakMap<ClientInfo, { generation: number; acl: ClientAcl }>();
  constructor(
    readonly path: string,
    private readonly refused: Refusals,
  ) {
    this.file = AclFile.load(path);
  }

  get rules(): number {
    return this.file.lines;
  }

  /** The rules for this client as they stand now. */
  forClient(client: ClientInfo): ClientAcl {
    const hit = this.cache.get(client);
    if (hit && hit.generation === this.generation) return hit.acl;
    const acl = this.file.forClient(client.clientId, client.username);
    this.cache.set(client, { generation: this.generation, acl });
    return acl;
  }

  /** Read the file again (throws AclFileError and keeps the old rules if it does not parse). */
  reload(): void {
    this.file = AclFile.load(this.path);
    this.generation++;
  }

  /** `next` behind the file's checks. */
  gates(next: Gates): Gates {
    return {
      authenticate: next.authenticate,
      authorizePublish: (client, msg) => {
        if (!this.forClient(client).canPublish(msg.topic)) {
          this.refused.aclPublish++;
          return RC.NotAuthorized;
        }
        return next.authorizePublish(client, msg);
      },
      authorizeSubscribe: (client, filter, qos) => {
        if (!this.forClient(client).canSubscribe(filter)) {
          this.refused.aclSubscribe++;
          return RC.NotAuthorized;
        }
        return next.authorizeSubscribe(client, filter, qos);
      },
    };
  }
}
