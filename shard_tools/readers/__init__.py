"""One reader per input format, each a generator of records (or the InputError of a bad one) from a binary
stream: fasta.py (FASTA and FASTQ), table.py (TSV and CSV), insdc.py (GenBank and EMBL). shard_tools.inputs
picks one by format and owns opening, decompression and skipping."""
