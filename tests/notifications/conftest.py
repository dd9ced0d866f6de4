from tests.fakes import fakehttp_adapter, immediate_queue

__all__ = ["fakehttp_adapter", "immediate_queue"]
