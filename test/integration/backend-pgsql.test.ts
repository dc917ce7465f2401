/** PostgreSQL 15 backend (issue 16) against a real server: the shared SQL suite (test/backend-sql.ts). */
import { sqlSuite } from '../backend-sql.js';

sqlSuite('pgsql');
