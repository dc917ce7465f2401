/** Every load client connects with these; brokers without a password file ignore them (strata-secure checks them). */
export const BENCH_USER = 'bench';
export const BENCH_PASSWORD = 'bench-password';
