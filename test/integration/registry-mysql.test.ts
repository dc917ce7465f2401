/** The shared registry suite on MariaDB 10.11 (test/registry-sql.ts). */
import { sqlRegistrySuite } from '../registry-sql.js';

sqlRegistrySuite('mysql');
