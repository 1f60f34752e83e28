#!/usr/bin/env bash
# Real atomic models for the benchmarks (the benchmark's own set-up, not the tests'): PDB entries that ship
# inside public packages, copied to bench/structures/ (git-ignored). PDB data are public domain (CC0).
#   1tii  heat-labile enterotoxin IIb, AB5 (6 chains, ~80 kDa; a 5-fold B pentamer, A breaks it)   PyMOL data
#   19hc  nine-haem cytochrome c, the two copies of its crystal unit (~65 kDa, 18 haems)             MDAnalysisTests
#   1a28  progesterone receptor ligand-binding domain dimer, ~55 kDa (pseudo 2-fold)                MDAnalysisTests
#   1BD2  T-cell receptor bound to a peptide-MHC, ~95 kDa, elongated                                MDAnalysisTests
#   6msm  human CFTR, the atomic model of a cryo-EM map (1,200 residues, 132 A long, asymmetric)   MDAnalysisTests
# Usage: bash bench/structures.sh; then bench/hard.py --shape bench/structures/1tii.pdb --apix 2.5 ...
set -eu
cd "$(dirname "$0")"
mkdir -p structures
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && apt-get download pymol-data >/dev/null && dpkg-deb -x pymol-data_*.deb pymol)
cp "$tmp"/pymol/usr/share/pymol/data/demo/1tii.pdb structures/
../.venv/bin/python -m pip download --no-deps --no-binary :all: -d "$tmp" MDAnalysisTests==2.11.0 >/dev/null
tar -xzf "$tmp"/mdanalysistests-2.11.0.tar.gz -C "$tmp"
d="$tmp"/mdanalysistests-2.11.0/MDAnalysisTests/data
cp "$d"/19hc.pdb.gz "$d"/1a28.pdb.gz "$d"/mmcif/1BD2.pdb.gz structures/
bzcat "$d"/6msm.pdb.bz2 > structures/6msm.pdb
ls -l structures
