/**
 * A new connection on an accepted stream, with the packet handlers: what the transports call.
 * Keeps connection.ts and handlers/ from importing each other.
 */
import type { Duplex } from 'node:stream';
import { type PacketHandlers, Connection, type SocketHandoff } from './connection.js';
import type { ProtocolContext } from './context.js';
import { handlePacket } from './handlers/index.js';
import { pubackReceived } from './handlers/puback.js';

const handlers: PacketHandlers = { packet: handlePacket, puback: pubackReceived };

export function createConnection(ctx: ProtocolContext, stream: Duplex, remoteAddress: string, handoff: SocketHandoff | null): Connection {
  return new Connection(ctx, stream, remoteAddress, handlers, handoff);
}
