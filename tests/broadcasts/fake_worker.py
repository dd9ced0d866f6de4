"""`python -m tests.broadcasts.fake_worker THREADS`: a real `tertulia worker` process (the same
`queue.run_worker`, every task registered) that also knows the tests' made-up `fakehttp` provider, so
a test can kill it mid-broadcast and check the local fake provider's log."""

import sys

from tertulia import tasks
from tertulia.channels import registry
from tertulia.kit import queue
from tests.fakes import FakeHttpAdapter

if __name__ == "__main__":
    assert tasks.__name__  # every task registered with huey, as `tertulia worker` does
    with registry.registered(FakeHttpAdapter()):
        queue.run_worker(int(sys.argv[1]))
