from tests.fakes import fakehttp_adapter

__all__ = ["fakehttp_adapter"]
