"""
@article{Punjani2017,
title = "cryoSPARC: algorithms for rapid unsupervised cryo-EM structure determination",
journal = "Nature Methods",
volume = "14",
number = "3",
pages = "290--296",
year = "2017",
doi = "http://dx.doi.org/10.1038/nmeth.4169",
url = "https://doi.org/10.1038/nmeth.4169",
author = "Punjani, Ali and Rubinstein, John L. and Fleet, David J. and Brubaker, Marcus A.",
}

@misc{Kim2025,
author = "Kim and Li and Clarke",
howpublished = "bioRxiv preprint 2025.09.08.674935",
journal = "bioRxiv",
year = "2025",
doi = "http://dx.doi.org/10.1101/2025.09.08.674935",
url = "https://doi.org/10.1101/2025.09.08.674935",
}

@article{Chen2013,
title = "High-resolution noise substitution to measure overfitting and validate resolution in 3D structure
         determination by single particle electron cryomicroscopy",
journal = "Ultramicroscopy",
volume = "135",
pages = "24--35",
year = "2013",
doi = "http://dx.doi.org/10.1016/j.ultramic.2013.06.004",
author = "Chen, Shaoxia and McMullan, Greg and Faruqi, Abdul R. and Murshudov, Garib N. and Short, Judith M.
          and Scheres, Sjors H. W. and Henderson, Richard",
}

@misc{AbInitRefine,
title = "scipion-em-abinitrefine: homogeneous ab-initio refinement (SGD from random starts, two gold-standard
         half-maps) for Scipion",
journal = "Scipion plugin",
howpublished = "https://github.com/scipion-em/scipion-em-abinitrefine",
url = "https://github.com/scipion-em/scipion-em-abinitrefine",
year = "2026",
author = "scipion-em-abinitrefine developers",
}
"""
