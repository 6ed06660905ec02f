// A failed gRPC call as raftkv reports it: the status code, the message, and the leader the
// answering node knows of in the `raftkv-leader` trailer, so a client can go straight there.

import { Metadata, type ServiceError } from "@grpc/grpc-js";

export const LEADER_TRAILER = "raftkv-leader";

export function grpcError(code: number, message: string, leader = ""): ServiceError {
  const metadata = new Metadata();
  if (leader) metadata.set(LEADER_TRAILER, leader);
  return Object.assign(new Error(message), { code, details: message, metadata }) as ServiceError;
}
