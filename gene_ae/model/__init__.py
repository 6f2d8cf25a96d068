"""The model side: the conv + LSTM autoencoder (config, layers, k-mer bags, losses), its checkpoints, and the
Encoder that turns sequences into search vectors. Imports nothing of train/, index/ or search/."""
