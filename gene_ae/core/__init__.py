"""What every side shares, without torch: k-mer codes and the one k-mer hash, windows and cuts, top-k,
the mutation simulator, and the one reader of a user's input into records."""
