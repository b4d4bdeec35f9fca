/**
 * One-at-a-time handling of a server stream's messages, with a bounded backlog.
 *
 * The node handles the coordinator's events strictly in order, and one event can take minutes (a
 * round's training). Events that arrive meanwhile wait. Without a bound, a coordinator that streams
 * events faster than the node handles them (a bug, or a flood) grows the node's memory without end:
 * every event becomes a queued task.
 *
 *   push(task):  backlog += 1; if backlog >= highWater and the stream runs: pause it
 *   task done:   backlog -= 1; if paused and backlog <= highWater / 2: resume it
 *
 * A paused grpc-js stream stops reading messages once its own small buffer is full (Node's object
 * mode high-water mark, 16), so HTTP/2 flow control holds everything else at the sender: the node
 * keeps at most about highWater + 16 events plus one flow-control window of bytes, whatever the
 * coordinator sends, and loses none of them (they are read, in order, once the backlog drains).
 * An honest coordinator sends a handful of events per round and never reaches the bound.
 *
 * Tasks run strictly after one another; a task that throws is reported to `onError` and the next
 * one still runs (a rejected chain would silently skip every later event).
 */

/** What the queue needs of a stream: Node's Readable pause/resume. */
export interface Pausable {
  pause(): unknown;
  resume(): unknown;
}

export class InOrder {
  private chain: Promise<void> = Promise.resolve();
  private backlog = 0;
  private paused = false;

  constructor(
    private readonly stream: Pausable,
    private readonly onError: (err: unknown) => void,
    /** tasks waiting or running at which the stream is paused */
    readonly highWater = 64,
  ) {
    if (!(highWater >= 2)) throw new Error(`InOrder: highWater must be at least 2 (got ${highWater})`);
  }

  /** Queues `task` after every task pushed before it. */
  push(task: () => Promise<void>): void {
    this.backlog++;
    if (this.backlog >= this.highWater && !this.paused) {
      this.paused = true;
      this.stream.pause();
    }
    this.chain = this.chain
      .then(task)
      .catch((err: unknown) => this.onError(err))
      .finally(() => {
        this.backlog--;
        if (this.paused && this.backlog <= this.highWater / 2) {
          this.paused = false;
          this.stream.resume();
        }
      });
  }

  /** Tasks pushed and not yet finished. */
  get pending(): number {
    return this.backlog;
  }

  /** Resolves once every task pushed so far has finished. */
  idle(): Promise<void> {
    return this.chain;
  }
}
