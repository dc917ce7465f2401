/** Public API: embed StrataMQ in an application, as with Aedes. */
import { Broker } from './broker.js';
import type { BrokerOptions } from './broker-options.js';

export { Broker } from './broker.js';
export type { BrokerOptions } from './broker-options.js';
export type { BrokerMetrics } from './hooks/metrics.js';
export type { BrokerEvents, ClientInfo, Gates, GateAnswer, ListenAddresses, MessageInfo } from './hooks/index.js';
export type { Consumer, ConsumerCounters, ConsumerOptions } from './hooks/bus.js';
export type { Message } from './wire/message.js';
export { CONFIG_KEYS, ConfigError, loadConfig, type Config, type ConfigInput } from './config.js';
export { RC } from './wire/reason-codes.js';
export { coreVersion } from './native.js';

/** Create a broker; call `listen()` to start serving and `close()` to stop. */
export function createBroker(options: BrokerOptions = {}): Broker {
  return new Broker(options);
}
