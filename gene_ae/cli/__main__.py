"""`python -m gene_ae.cli`: the same as the `gene-ae` command."""

from gene_ae.cli import main

main()
