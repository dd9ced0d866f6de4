"""The assistant's offline retrieval on its evaluation set (tests/assistant/data): top-1 accuracy on
answerable questions, hand-off recall and precision on unanswerable ones, per split, and answer
latency with the 150 entries and with 10,000 (the rest generated product entries).

`python -m bench assistant`. Knobs: TERTULIA_BENCH_ENTRIES (10000); TERTULIA_BENCH_MISSES=dev prints
the dev split's wrong answers and hand-offs (expected, got, closest entry and its confidence), to
study failures without looking at the test split's questions.

The latency is one `WorkspaceIndex.answer` call in this process, the index already built (what a
question costs between two changes of the knowledge); a real request adds one primary-key read of
the knowledge version. The index build time is printed too (paid once per change per process).
"""

import os
import time

from tests.assistant.evaluation import build, evaluate, load_knowledge, load_questions, padding

from tertulia.assistant.retrieval import DEFAULT_THRESHOLD

ENTRIES = int(os.environ.get("TERTULIA_BENCH_ENTRIES", "10000"))
MISSES_OF = os.environ.get("TERTULIA_BENCH_MISSES", "")


def main() -> None:
    knowledge = load_knowledge()
    print(f"threshold {DEFAULT_THRESHOLD}")
    for size in (len(knowledge.entries), ENTRIES):
        extra = padding(size - len(knowledge.entries), start_id=len(knowledge.entries) + 1)
        started = time.perf_counter()
        index = build(knowledge, extra)
        built = time.perf_counter() - started
        print(f"-- {size} entries (index built in {built:.2f} s)")
        for split in ("dev", "test"):
            # Questions are asked three times, so the latency figures rest on enough calls.
            questions = load_questions(split)
            misses: list[str] = []
            result = evaluate(index, knowledge, questions, misses=misses)
            for _ in range(2):
                result.latencies_ms += evaluate(index, knowledge, questions).latencies_ms
            print(f"{split:5} {result.summary()}")
            if split == MISSES_OF == "dev":
                print("\n".join(f"  {miss}" for miss in misses))


if __name__ == "__main__":
    main()
