"""The training side: `python -m gene_ae.train` (Ray TorchTrainer, DDP) on shard-fasta shards, tracked in MLflow.

data.py      shards -> batches (WebDataset)         step.py      one optimisation step, the loss, the state
loop.py      the per-worker loop Ray runs           validate.py  val-split metrics (recall as eval measures it)
run.py       the driver's MLflow run, registration  driver.py    arguments, checks, Ray, the TorchTrainer
"""
