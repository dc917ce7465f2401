/** MySQL backend (issue 16) against a real MariaDB server: the shared SQL suite (test/backend-sql.ts). */
import { sqlSuite } from '../backend-sql.js';

sqlSuite('mysql');
