// The simulator's agenda: a binary min-heap of events ordered by (virtual time, insertion
// number). The insertion number breaks ties, so two events at the same instant always run in
// the order they were scheduled and a seed replays exactly.

interface Slot<T> {
  readonly at: number;
  readonly order: number;
  readonly event: T;
}

export class EventQueue<T> {
  readonly #heap: Slot<T>[] = [];
  #order = 0;

  get size(): number {
    return this.#heap.length;
  }

  push(at: number, event: T): void {
    const heap = this.#heap;
    heap.push({ at, order: this.#order++, event });
    let i = heap.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!isBefore(heap[i]!, heap[parent]!)) break;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  /** The time of the next event, or Infinity when the agenda is empty. */
  peekTime(): number {
    return this.#heap[0]?.at ?? Infinity;
  }

  peek(): T | undefined {
    return this.#heap[0]?.event;
  }

  pop(): { at: number; event: T } | undefined {
    const heap = this.#heap;
    const top = heap[0];
    if (top === undefined) return undefined;
    const last = heap.pop()!;
    if (heap.length > 0) {
      heap[0] = last;
      let i = 0;
      for (;;) {
        const left = 2 * i + 1;
        const right = left + 1;
        let smallest = i;
        if (left < heap.length && isBefore(heap[left]!, heap[smallest]!)) smallest = left;
        if (right < heap.length && isBefore(heap[right]!, heap[smallest]!)) smallest = right;
        if (smallest === i) break;
        [heap[i], heap[smallest]] = [heap[smallest]!, heap[i]!];
        i = smallest;
      }
    }
    return { at: top.at, event: top.event };
  }
}

function isBefore<T>(a: Slot<T>, b: Slot<T>): boolean {
  return a.at < b.at || (a.at === b.at && a.order < b.order);
}
