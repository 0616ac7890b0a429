"""NGCF recommender (Wang et al. 2019): LightGCN's recommender with the NGCF encoder (feature transforms,
bi-interaction, LeakyReLU, message dropout, layer concatenation)."""

from __future__ import annotations

from symcere.models.lightgcn import LightGCN


class NGCF(LightGCN):
    backbone = "ngcf"
