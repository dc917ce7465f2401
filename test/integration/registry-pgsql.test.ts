/** The shared registry suite on PostgreSQL 15 (test/registry-sql.ts). */
import { sqlRegistrySuite } from '../registry-sql.js';

sqlRegistrySuite('pgsql');
