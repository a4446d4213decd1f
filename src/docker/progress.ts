/**
 * Progress of a load, push or pull as the engine reports it, turned into small events; what the
 * engine's words mean (which states are final) is known here, and report/ draws them.
 */
import type { ProgressEvent as TaskProgress } from "../domain/events.js";
import type { EngineMessage } from "./messages.js";

export interface EngineProgress {
  /** The layer (short id) or tag the event is about; absent for messages about the whole image. */
  id?: string;
  /** The engine's wording: "Preparing", "Pushing", "Pushed", "Layer already exists", "Mounted from …". */
  status: string;
  /** Bytes done and expected, while a layer is moving. */
  current?: number;
  total?: number;
}

/** The progress event a message stands for, if it is one (results such as `aux` are not). */
export function toProgressEvent(message: EngineMessage): EngineProgress | undefined {
  const status = message.status ?? message.stream?.trim();
  if (!status) return undefined;
  const event: EngineProgress = { status };
  if (message.id) event.id = message.id;
  const { current, total } = message.progressDetail ?? {};
  if (current !== undefined) event.current = current;
  if (total !== undefined && total > 0) event.total = total;
  return event;
}

/** States after which a layer has nothing left to do. */
export function isFinalStatus(status: string): boolean {
  return (
    status === "Pushed" ||
    status === "Layer already exists" ||
    status.startsWith("Mounted from") ||
    status === "Already exists" ||
    status === "Pull complete"
  );
}

/** The engine's event as a step of `task`: a layer's state, or a message about the whole image. */
export function taskProgress(task: string, event: EngineProgress): TaskProgress {
  if (event.id === undefined) return { kind: "status", task, status: event.status };
  return {
    kind: "part",
    task,
    part: event.id,
    status: event.status,
    ...(event.current !== undefined ? { bytes: event.current } : {}),
    ...(event.total !== undefined ? { total: event.total } : {}),
    ...(isFinalStatus(event.status) ? { done: true } : {}),
  };
}
