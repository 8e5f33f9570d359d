"""The method on one video (or a batch of videos): T3AL's steps, its adapter, losses and optimiser,
FreeZAD's scoring, the naive baseline, the open-set presence and the online protocol's causal T3AL.
Nothing here knows about processes, caches on disk, manifests or output folders."""
