"""Scipion protocol: homogeneous ab-initio refinement (two gold-standard half-maps from random starts).

The computation runs in the plugin's engine through its command line (``python -m scipion_abinitrefine.cli
run``); this protocol converts the input particles, runs the job and turns its files into Scipion outputs.
"""
import json
import os
import shutil
import sys

import numpy as np
import pyworkflow.protocol.params as params
import pyworkflow.utils as pwutils
from pwem.objects import FSC, Float, Integer, SetOfParticles, Volume
from pwem.protocols import ProtRefine3D
from pyworkflow import BETA
from pyworkflow.protocol.constants import LEVEL_ADVANCED

from .. import constants as C


class ProtAbInitioRefine(ProtRefine3D):
    """Homogeneous ab-initio refinement: reconstructs a 3D map from particles with CTF but no poses.

    The particles are split into two random half-sets; each half is reconstructed independently from a random
    start by stochastic gradient descent (CryoSPARC-style ab-initio with a coarse-to-fine pose search, the
    resolution growing from the initial to the maximum resolution). The halves are kept in the same frame by
    aligning their maps at low resolution only (never finer than the half-map alignment resolution), then
    reconstructed from their final poses, and the gold-standard FSC between them (0.143, phase-randomisation
    corrected) gives the resolution.

    Outputs: the particles used, with their poses and half-set (_rlnRandomSubset 1|2); the average map with
    both half-maps; the FSC curve; and the particles not used (when ``Num particles to use`` leaves some out).
    """

    _label = "homogeneous ab-initio refinement"
    _devStatus = BETA
    _possibleOutputs = {
        "outputParticles": SetOfParticles,
        "outputVolume": Volume,
        "outputFSC": FSC,
        "outputUnusedParticles": SetOfParticles,
    }

    # -------------------------- DEFINE param functions ----------------------
    def _defineParams(self, form):
        form.addHidden(params.GPU_LIST, params.StringParam, default="0",
                       label="GPU id", help="GPU to use (one id, e.g. 0).")
        form.addHidden(params.USE_GPU, params.BooleanParam, default=True,
                       label="Use GPU?",
                       help="Yes: run on the GPU when one is visible (CUDA), otherwise on the CPU. "
                            "No: always run on the CPU (threads from the parallelization section).")

        form.addSection(label="Input")
        form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfParticles",
                      pointerCondition="hasCTF", important=True, label="Input particles",
                      help="Particles with CTF parameters (poses are not needed and are ignored). "
                           "Images are used in place when they are MRC stacks; other formats are converted.")
        form.addParam("numParticles", params.IntParam, default=0, label="Num particles to use",
                      help="Number of particles, taken at random and split evenly between the two half-sets, to "
                           "use for the reconstruction (0 = all). The others are returned as unused particles.")
        form.addParam("symmetry", params.StringParam, default="C1", label="Symmetry",
                      help="Only C1 is supported: ab-initio reconstruction in C1 avoids imposing a wrong "
                           "symmetry on a map that is not known yet. Symmetrise in a later refinement.")

        form.addSection(label="Ab-initio")
        form.addParam("maxRes", params.FloatParam, default=C.DEFAULT_MAX_RES, label="Maximum resolution (A)",
                      help="Finest resolution the SGD reaches (CryoSPARC Ab-Initio Reconstruction: 12 A; "
                           "Homogeneous Ab-Initio Refinement pushes it to about 3 A with enough good particles). "
                           "Must not be finer than Nyquist (2 x pixel size); use the wizard for Nyquist.")
        form.addParam("initRes", params.FloatParam, default=C.DEFAULT_INIT_RES, label="Initial resolution (A)",
                      help="Resolution of the first iterations (annealing from random starts).")
        line = form.addLine("Minibatch size", help="Particles per SGD iteration, before and after the switch "
                            "iteration (CryoSPARC: 90 / 300; small particles may need 300 / 1000).")
        line.addParam("initMinibatch", params.IntParam, default=C.DEFAULT_INIT_MINIBATCH, label="initial")
        line.addParam("finalMinibatch", params.IntParam, default=C.DEFAULT_FINAL_MINIBATCH, label="final")
        form.addParam("minibatchSwitch", params.IntParam, default=C.DEFAULT_MINIBATCH_SWITCH,
                      expertLevel=LEVEL_ADVANCED, label="Minibatch switch iteration",
                      help="Iteration at which the minibatch size goes from the initial to the final size.")
        line = form.addLine("Number of iterations",
                            help="Initial iterations are run at the initial resolution (annealing); final "
                                 "iterations at the maximum resolution, after the resolution ramp.")
        line.addParam("initIters", params.IntParam, default=C.DEFAULT_INIT_ITERS, label="initial")
        line.addParam("finalIters", params.IntParam, default=C.DEFAULT_FINAL_ITERS, label="final")
        form.addParam("radiusStep", params.FloatParam, default=C.DEFAULT_RADIUS_STEP,
                      label="Fourier radius step",
                      help="Growth of the Fourier radius (in pixels of the working box) per iteration between "
                           "the initial and the maximum resolution. Smaller = longer, safer ramp.")
        form.addParam("initLR", params.FloatParam, default=C.DEFAULT_INIT_LR, expertLevel=LEVEL_ADVANCED,
                      label="Initial learning rate", help="SGD step size at the start (CryoSPARC: 0.4).")
        form.addParam("lrDuration", params.IntParam, default=C.DEFAULT_LR_DURATION, expertLevel=LEVEL_ADVANCED,
                      label="Initial learning rate duration",
                      help="Iterations at the initial learning rate before it decays.")
        form.addParam("targetESS", params.FloatParam, default=C.DEFAULT_TARGET_ESS, expertLevel=LEVEL_ADVANCED,
                      label="Target 3D ESS fraction",
                      help="Fraction of the poses that should carry posterior mass early on; sets the initial "
                           "noise scale (annealing). CryoSPARC default: 0.011.")
        form.addParam("poseSamples", params.IntParam, default=C.DEFAULT_POSE_SAMPLES, expertLevel=LEVEL_ADVANCED,
                      label="Pose samples per image",
                      help="Poses drawn per image from the coarse posterior, beyond the best ones, so that the "
                           "update marginalises over poses while the posterior is broad (low SNR, low "
                           "resolution). 0 = best poses only (fails on low-SNR data).")
        form.addParam("numStarts", params.IntParam, default=C.DEFAULT_N_STARTS, expertLevel=LEVEL_ADVANCED,
                      label="Random starts per half",
                      help="Each half-set runs this many random initial models through the initial iterations "
                           "and the start of the resolution ramp: at 1.15 x the initial Fourier radius the better "
                           "half of them goes on, at 1.3 x the one whose model explains the half's images best "
                           "(likelihood against noise alone, on the same images). On low-SNR data some random "
                           "starts stay stuck at low resolution where others converge. Each extra start costs "
                           "those iterations once more. 1 = one start.")
        form.addParam("junkWeighting", params.BooleanParam, default=True, expertLevel=LEVEL_ADVANCED,
                      label="Down-weight junk?",
                      help="Weight each image by the probability that the model, rather than noise alone, "
                           "explains it, so that junk steers the model less.")
        form.addParam("excludeJunk", params.BooleanParam, default=False,
                      label="Junk to the unused particles?",
                      help="Particles that the final model explains no better than noise (negative "
                           "rlnLogLikeliContribution) go to the unused particles instead of the output.")
        form.addParam("maskDiameter", params.FloatParam, default=0.0, label="Window/mask diameter (A)",
                      help="Diameter of the soft spherical window applied to the models (A). 0 = automatic "
                           "(85% of the box). The wizard proposes it from the box size and the pixel size.")

        form.addSection(label="Gold standard")
        form.addParam("alignRes", params.FloatParam, default=C.DEFAULT_ALIGN_RES,
                      label="Half-map alignment resolution (A)",
                      help="The two half-maps are aligned to each other using only information up to this "
                           "resolution (default 20 A), so that they stay independent beyond it. Must be "
                           "coarser than the maximum resolution.")
        form.addParam("alignEvery", params.IntParam, default=C.DEFAULT_ALIGN_EVERY, expertLevel=LEVEL_ADVANCED,
                      label="Iterations between half-map alignments",
                      help="How often half B's model is aligned to half A's (rotation, shift, hand) during the "
                           "SGD, from the end of the initial iterations on; the halves are also aligned once at "
                           "the end. 0 = only at the end.")
        form.addParam("splitByMicrograph", params.BooleanParam, default=False,
                      label="Keep micrographs in one half-set?",
                      help="Put all particles of a micrograph into the same half-set, so that particles that "
                           "share a micrograph (and its noise, drift and CTF errors) never sit in both halves.")
        form.addParam("seed", params.IntParam, default=C.DEFAULT_SEED, expertLevel=LEVEL_ADVANCED,
                      label="Random seed",
                      help="Seed of the half-set split, the particle order and the random initial models. "
                           "The same seed and inputs give the same result.")

        form.addParallelSection(threads=2, mpi=0)

    # -------------------------- INSERT steps functions ----------------------
    def _insertAllSteps(self):
        self._insertFunctionStep(self.convertInputStep, self.inputParticles.get().getObjId(), needsGPU=False)
        self._insertFunctionStep(self.runJobStep, self._getJobArgs(), needsGPU=True)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    # -------------------------- paths ----------------------------------------
    def _getJobDir(self, *p):
        return self._getExtraPath(C.JOB_DIR, *p)

    def _getInputStar(self):
        return self._getExtraPath(C.INPUT_STAR)

    def _getIdsFile(self):
        return self._getExtraPath("input_ids.json")

    # -------------------------- STEPS functions -----------------------------
    def convertInputStep(self, inputId):
        from ..convert import write_input_star

        keys = write_input_star(self.inputParticles.get(), os.path.abspath(self._getInputStar()),
                                work_dir=os.path.abspath(self._getExtraPath()), log=self.info)
        with open(self._getIdsFile(), "w") as f:
            json.dump([[k[0], k[1], pid] for k, pid in keys.items()], f)

    def _getJobArgs(self):
        """The job options (CryoSPARC-named) as a list of command-line arguments."""
        num = self.numParticles.get() or 0
        args = [
            "--num-particles", num,
            "--max-res", self.maxRes.get(),
            "--init-res", self.initRes.get(),
            "--init-minibatch", self.initMinibatch.get(),
            "--final-minibatch", self.finalMinibatch.get(),
            "--minibatch-switch", self.minibatchSwitch.get(),
            "--init-iters", self.initIters.get(),
            "--final-iters", self.finalIters.get(),
            "--fourier-radius-step", self.radiusStep.get(),
            "--init-lr", self.initLR.get(),
            "--lr-duration", self.lrDuration.get(),
            "--target-ess", self.targetESS.get(),
            "--seed", self.seed.get(),
            "--align-res", self.alignRes.get(),
            "--align-every", self.alignEvery.get(),
            "--mask-diameter", self.maskDiameter.get() or 0.0,
            "--pose-samples", self.poseSamples.get(),
            "--starts", self.numStarts.get(),
        ]
        if self.splitByMicrograph:
            args.append("--split-by-micrograph")
        if not self.junkWeighting:
            args.append("--no-junk-weighting")
        if self.excludeJunk:
            args.append("--exclude-junk")
        return [str(a) for a in args]

    def getGpuList(self):
        """No GPUs when the form says CPU: a queue's submission (GPU_COUNT) then asks for none."""
        return super().getGpuList() if self.usesGpu() else []

    def _getComputeArgs(self):
        threads = max(1, int(self.numberOfThreads.get() or 1))
        args = ["--threads", str(threads)]
        if self.usesGpu():
            gpus = self.getGpuList()
            args += ["--backend", "auto"]
            if gpus:
                args += ["--gpu", str(gpus[0])]
        else:
            args += ["--backend", "cpu"]
        return args

    def _getEnviron(self):
        env = pwutils.Environ(os.environ)
        threads = str(max(1, int(self.numberOfThreads.get() or 1)))
        # numba's pool gets the threads (--threads); BLAS gets one, the pose search runs its matrix products
        # in parallel itself (engine/threads.py sets the same at run time, this also covers import time)
        env["OMP_NUM_THREADS"] = threads
        for var in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"
        return env

    @staticmethod
    def getPython():
        from .. import Plugin

        return Plugin.getPython() if hasattr(Plugin, "getPython") else sys.executable

    def runJobStep(self, jobArgs):
        jobDir = os.path.abspath(self._getJobDir())
        args = ["-m", "scipion_abinitrefine.cli", "run", "--particles", os.path.abspath(self._getInputStar()),
                "--out", jobDir] + list(jobArgs) + self._getComputeArgs()
        ckpt = os.path.join(jobDir, C.CHECKPOINT)
        done = os.path.exists(os.path.join(jobDir, C.OUT_RESULT))
        if done and self.isContinued():  # finished (its checkpoint already removed): nothing to redo
            self.info(f"the job in {jobDir} already finished; keeping its outputs")
            return
        if os.path.exists(ckpt) or done:
            if self.isContinued():
                self.info(f"continuing the job from its checkpoint {ckpt}")
                args.append("--continue")
            else:  # stale files of an earlier run: start afresh
                shutil.rmtree(jobDir)
        self.runJob(self.getPython(), args, numberOfMpi=1, numberOfThreads=1, env=self._getEnviron())

    def createOutputStep(self):
        from ..convert import read_job_keys, read_job_particles, read_job_scores, set_particle_pose, stack_key

        inputSet = self.inputParticles.get()
        with open(self._getIdsFile()) as f:
            idToKey = {int(pid): stack_key(p, i) for p, i, pid in json.load(f)}
        used = read_job_particles(self._getJobDir(C.OUT_PARTICLES))
        scores = read_job_scores(self._getJobDir(C.OUT_PARTICLES))
        unusedKeys = set(read_job_keys(self._getJobDir(C.OUT_UNUSED)))
        result = self._readResult()
        apix = inputSet.getSamplingRate()

        outSet = self._createSetOfParticles()
        outSet.copyInfo(inputSet)
        outSet.setAlignmentProj()
        unusedSet = self._createSetOfParticles(suffix="unused")
        unusedSet.copyInfo(inputSet)
        nMissing = 0
        for particle in inputSet.iterItems(orderBy="id"):
            key = idToKey.get(int(particle.getObjId()))
            pose = used.get(key)
            if pose is not None:
                rot, tilt, psi, ox, oy, half = pose
                newPart = particle.clone()
                set_particle_pose(newPart, rot, tilt, psi, ox, oy, apix)
                setattr(newPart, C.HALF_SET_ATTR, Integer(half if half is not None else 0))
                for col, v in scores.get(key, {}).items():  # every item carries every column (sqlite)
                    setattr(newPart, "_" + col, Float(v))
                outSet.append(newPart)
            else:
                if key not in unusedKeys:
                    nMissing += 1
                unusedSet.append(particle.clone())
        if nMissing:
            self.warning(f"{nMissing} input particles are in neither particles.star nor unused.star of the job: "
                         "they are returned as unused")

        vol = Volume()
        vol.setFileName(self._getJobDir(C.OUT_MAP))
        vol.setSamplingRate(float(result.get("apix", apix)))
        vol.setHalfMaps([self._getJobDir(C.OUT_HALF_A), self._getJobDir(C.OUT_HALF_B)])
        vol.setObjComment("average of the two gold-standard half-maps")

        fsc = FSC(objLabel=f"FSC (0.143: {result.get('resolution_A', float('nan')):.2f} A)")
        freq, values = self._readFsc()
        fsc.setData(freq.tolist(), values.tolist())

        self._defineOutputs(outputParticles=outSet, outputVolume=vol, outputFSC=fsc)
        self._defineTransformRelation(self.inputParticles, outSet)
        self._defineSourceRelation(self.inputParticles, vol)
        self._defineSourceRelation(self.inputParticles, fsc)
        if unusedSet.getSize():
            self._defineOutputs(outputUnusedParticles=unusedSet)
            self._defineSourceRelation(self.inputParticles, unusedSet)

    # -------------------------- helpers -------------------------------------
    def _readResult(self):
        fn = self._getJobDir(C.OUT_RESULT)
        if not os.path.exists(fn):
            return {}
        with open(fn) as f:
            return json.load(f)

    def _readFsc(self, column="fsc_corrected"):
        """(frequency in 1/A, FSC values) of the job's fsc.csv."""
        table = np.genfromtxt(self._getJobDir(C.OUT_FSC), delimiter=",", names=True)
        return np.atleast_1d(table["freq_1_per_A"]), np.atleast_1d(table[column])

    def _readLog(self):
        """Per-iteration records of both halves (list of dicts) from log.json."""
        fn = self._getJobDir(C.OUT_LOG)
        if not os.path.exists(fn):
            return []
        with open(fn) as f:
            log = json.load(f)
        return log.get("iterations", []) if isinstance(log, dict) else log

    # -------------------------- INFO functions ------------------------------
    def _validate(self):
        errors = []
        parts = self.inputParticles.get()
        if parts is None:
            return ["Input particles: select a set of particles."]
        if not parts.hasCTF():
            errors.append("Input particles have no CTF: estimate the CTF of the micrographs and extract the "
                          "particles again (or import them with their CTF parameters).")
        box = parts.getXDim()
        if box is not None and box % 2:
            errors.append(f"Input particles: the box size {box} px is odd; re-extract (or crop/pad) the particles "
                          "with an even box size.")
        apix = parts.getSamplingRate()
        nyquist = 2.0 * apix
        if self.maxRes.get() < nyquist - 1e-6:
            errors.append(f"Maximum resolution ({self.maxRes.get():g} A) is finer than Nyquist ({nyquist:g} A at "
                          f"{apix:g} A/px): set it to {nyquist:g} A or coarser.")
        if self.initRes.get() < self.maxRes.get():
            errors.append(f"Initial resolution ({self.initRes.get():g} A) must be coarser than (>=) the maximum "
                          f"resolution ({self.maxRes.get():g} A): raise the initial resolution.")
        if self.alignRes.get() < self.maxRes.get():
            errors.append(f"Half-map alignment resolution ({self.alignRes.get():g} A) is finer than the maximum "
                          f"resolution ({self.maxRes.get():g} A): the half-maps would share high-resolution "
                          "information; set it coarser (default 20 A).")
        nUse = parts.getSize()
        if self.numParticles.get() and self.numParticles.get() > 0:
            nUse = min(nUse, self.numParticles.get())
        if nUse < 2 * self.finalMinibatch.get():
            errors.append(f"Only {nUse} particles would be used, fewer than 2 x final minibatch size "
                          f"({2 * self.finalMinibatch.get()}): lower 'Minibatch size' (initial and final) or "
                          "'Num particles to use' = 0 (all), or add particles.")
        if str(self.symmetry.get()).strip().upper() not in C.SYMMETRY_CHOICES:
            errors.append(f"Symmetry '{self.symmetry.get()}' is not supported: only C1 is; run in C1 and impose "
                          "symmetry in a later refinement.")
        # every numeric bound, from the engine's one table, on the options this form gives the job
        from ..cli import job_params_from_args
        from ..engine import bounds

        try:
            errors += bounds.check(job_params_from_args(self._getJobArgs() + self._getComputeArgs()))
        except SystemExit:  # argparse refused a value (it printed why)
            errors.append("A parameter value could not be read: check the numeric fields.")
        if self.maskDiameter.get() and box and self.maskDiameter.get() > box * apix:
            errors.append(f"Window/mask diameter ({self.maskDiameter.get():g} A) is larger than the box "
                          f"({box * apix:g} A): use the wizard or 0 (automatic).")
        return errors

    def _warnings(self):
        """Settings that will probably fail or mislead (the user may still go on)."""
        warnings = []
        parts = self.inputParticles.get()
        if parts is None:
            return warnings
        n = parts.getSize()
        if self.numParticles.get() and self.numParticles.get() > 0:
            n = min(n, self.numParticles.get())
        from ..engine.job import FEW_PER_HALF

        if n // 2 < FEW_PER_HALF:
            warnings.append(f"Only {n // 2} particles per half-set: from random starts the halves may not find the "
                            "same structure, and the gold-standard FSC is weakly determined. Use more particles "
                            "if you have them.")
        nyq = 2.0 * parts.getSamplingRate()
        if self.maxRes.get() < 1.5 * nyq and n < 20000:
            warnings.append(f"Maximum resolution {self.maxRes.get():g} A is close to Nyquist ({nyq:g} A) for "
                            f"{n} particles: the last iterations will mostly fit noise; a coarser maximum "
                            "resolution is faster and as good.")
        return warnings

    def _summary(self):
        summary = []
        if not hasattr(self, "outputVolume"):
            summary.append("Output not ready yet.")
            return summary
        result = self._readResult()
        if result:
            summary.append(f"Gold-standard resolution (FSC 0.143, corrected): {result['resolution_A']:.2f} A")
            summary.append(f"Particles used: {result.get('n_used')} (half-sets: {result.get('n_half_A', '?')} / "
                           f"{result.get('n_half_B', '?')}), unused: {result.get('n_unused')}")
            conv = result.get("convergence")
            if conv:  # did the independent halves find the same structure?
                summary.append(conv["message"])
            for half, st in sorted((result.get("starts") or {}).items()):  # which random start each half kept
                last = st["rounds"][-1]
                gains = ", ".join(f"{x:.3f}" for x in last["scores"])
                summary.append(f"Half {half}: kept random start {st['kept'] + 1} of {len(st['rounds'][0]['starts'])} "
                               f"(log-likelihood gain per image of the last {len(last['starts'])}: {gains})")
        summary.append(f"Maximum resolution {self.maxRes.get():g} A, initial {self.initRes.get():g} A, half-maps "
                       f"aligned up to {self.alignRes.get():g} A")
        return summary

    def _methods(self):
        if not hasattr(self, "outputVolume"):
            return []
        result = self._readResult()
        res = f" to {result['resolution_A']:.2f} A" if result else ""
        return [f"An initial 3D map was obtained{res} from {self.getObjectTag('inputParticles')} by homogeneous "
                "ab-initio refinement (stochastic gradient descent from random starts as in CryoSPARC "
                f"[Punjani2017], {self.numStarts.get()} per half with the most likely kept, run independently on two "
                "random half-sets that were aligned to each other only "
                f"below {self.alignRes.get():g} A). The resolution was estimated by the gold-standard FSC at 0.143 "
                "with phase-randomisation correction [Chen2013]."]

    def _citations(self):
        return ["Punjani2017", "Kim2025", "Chen2013", "AbInitRefine"]
