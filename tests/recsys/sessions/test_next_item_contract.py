"""Every next-item model passes the same contract (tests/recsys/sessions/next_item_contract.py)."""

from __future__ import annotations

from next_item_contract import N_ITEMS, NextItemContract, sessions_to_arrays

from gradtracer.recsys.models.gru4rec import GRU4Rec, GRU4RecConfig
from gradtracer.recsys.models.markov import MarkovChain
from gradtracer.recsys.models.session_popularity import SessionPopularity
from gradtracer.recsys.sessions import SessionArrays


class TestSessionPopularity(NextItemContract):
    @staticmethod
    def make_model(n_items: int) -> SessionPopularity:
        return SessionPopularity(n_items)

    def planted_case(self) -> tuple[SessionArrays, list[list[int]], list[int]]:
        """Item 7 is clicked in every session: whatever the prefix, it comes first."""
        sessions = [[7, i] for i in range(N_ITEMS) if i != 7] + [[i, 7] for i in range(4)]
        prefixes = [[0], [3, 4], [7], [9, 8]]
        return sessions_to_arrays(sessions, N_ITEMS), prefixes, [7] * len(prefixes)


class TestMarkovChain(NextItemContract):
    @staticmethod
    def make_model(n_items: int) -> MarkovChain:
        return MarkovChain(n_items, alpha=0.1)


class TestGRU4Rec(NextItemContract):
    @staticmethod
    def make_model(n_items: int) -> GRU4Rec:
        config = GRU4RecConfig(
            layers=(16,), batch_size=16, n_sample=8, n_epochs=3, learning_rate=0.1, random_state=0
        )
        return GRU4Rec(n_items, config)


class TestGRU4RecOneHotInput(NextItemContract):
    @staticmethod
    def make_model(n_items: int) -> GRU4Rec:
        config = GRU4RecConfig(
            layers=(16,),
            batch_size=16,
            n_sample=0,
            n_epochs=3,
            constrained_embedding=False,
            loss="bpr-max",
            learning_rate=0.1,
            random_state=0,
        )
        return GRU4Rec(n_items, config)
