/**
 * SIGHUP: the password file, the JWT keys and the ACL file read again. A file that does not
 * load leaves what was in force (logged, naming the file). After an ACL change every connected
 * session's subscriptions meet the new rules at once (Router.enforceAcl); offline sessions meet
 * them when they reconnect.
 */
import type { AccessControl } from '../auth/access.js';
import type { Authenticator } from '../auth/authenticator.js';
import type { Logger } from '../log.js';
import type { Router } from '../routing/router.js';
import type { SessionStore } from '../session/store.js';

export interface Reloadable {
  readonly authenticator: Authenticator;
  readonly access: AccessControl | null;
  readonly sessions: SessionStore;
  readonly router: Router;
  readonly log: Logger;
}

export async function reloadSecurity(b: Reloadable): Promise<void> {
  try {
    await b.authenticator.reload();
    if (b.authenticator.passwordFile || b.authenticator.jwt) b.log.info('credentials reloaded');
  } catch (e) {
    b.log.error({ err: (e as Error).message }, 'credentials not reloaded: those in force stay');
  }
  const access = b.access;
  if (!access) return;
  try {
    access.reload();
  } catch (e) {
    b.log.error({ err: (e as Error).message }, 'ACL file not reloaded: the rules in force stay');
    return;
  }
  let removed = 0;
  for (const session of b.sessions) removed += b.router.enforceAcl(session).length;
  b.log.info({ file: access.path, subscriptionsRemoved: removed }, 'ACL file reloaded');
}
