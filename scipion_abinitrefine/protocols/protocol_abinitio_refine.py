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
from pwem.objects import FSC, Float, Integer, SetOfFSCs, SetOfParticles, Volume
from pwem.protocols import ProtRefine3D
from pyworkflow import BETA
from pyworkflow.protocol.constants import LEVEL_ADVANCED

from .. import constants as C
from ..engine import params as jobparams
from ..engine import symmetry


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
        "outputFSCs": SetOfFSCs,
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

        for section in jobparams.SECTIONS:
            form.addSection(label=section)
            if section == "Input":
                form.addParam("inputParticles", params.PointerParam, pointerClass="SetOfParticles",
                              pointerCondition="hasCTF", important=True, label="Input particles",
                              help="Particles with CTF parameters (poses are not needed and are ignored). Images "
                                   "are used in place when they are MRC stacks; other formats are converted.")
            self._addJobParams(form, section)

        form.addParallelSection(threads=2, mpi=0)

    @staticmethod
    def _addJobParams(form, section):
        """The job's parameters of one form section, from the engine's parameter table (engine/params.py)."""
        kinds = {int: params.IntParam, float: params.FloatParam, bool: params.BooleanParam, str: params.StringParam}
        lines = {}
        for name, f in jobparams.form_fields():
            m = f.metadata
            if m["section"] != section:
                continue
            if name == "symmetry":  # a group and an order, as in the cryosparc2 plugin; the job gets RELION's name
                grp, order = symmetry.to_group_order(jobparams.default(f))
                line = form.addLine(m["form_label"], help=m["help"])
                line.addParam("symmetryGroup", params.EnumParam, choices=list(symmetry.FORM_GROUPS), default=grp,
                              display=params.EnumParam.DISPLAY_COMBO, label="group", help=m["help"])
                line.addParam("symmetryOrder", params.IntParam, default=order, condition="symmetryGroup <= 1",
                              label="order", help="Order n of Cn or Dn (C1 = no symmetry; Dn needs n >= 2).")
                continue
            kw = dict(default=jobparams.default(f), label=m["form_label"], help=m["help"])
            if m["advanced"]:
                kw["expertLevel"] = LEVEL_ADVANCED
            if m["line"]:
                if m["line"] not in lines:
                    label, hlp = jobparams.LINES[m["line"]]
                    lines[m["line"]] = form.addLine(label, help=hlp)
                lines[m["line"]].addParam(name, kinds[jobparams.kind(f)], **kw)
            else:
                form.addParam(name, kinds[jobparams.kind(f)], **kw)

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
        """The job options (CryoSPARC-named) as command-line arguments: every form field of the engine's
        parameter table with its flag; a boolean's flag only when the form flips its default."""
        args = []
        for name, f in jobparams.form_fields():
            v = self._symmetry() if name == "symmetry" else getattr(self, name).get()
            flag = f.metadata["flag"]
            if jobparams.kind(f) is bool:
                if v is not None and bool(v) == jobparams.bool_flag_value(f):
                    args.append(flag)
            else:
                args += [flag, str(jobparams.default(f) if v is None else v)]
        return args

    def _symmetry(self) -> str:
        """The form's group and order as RELION's symmetry name (e.g. D7)."""
        return symmetry.from_group_order(self.symmetryGroup.get(), self.symmetryOrder.get() or 0)

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
        # with junk classes: each unused particle's class (0: never scored) and its probability
        classes = ({k: v for k, v in read_job_scores(self._getJobDir(C.OUT_UNUSED)).items() if "rlnClassNumber" in v}
                   if self.junkClasses.get() else {})
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
                newPart = particle.clone()
                if self.junkClasses.get():  # every item carries both columns (sqlite)
                    c = classes.get(key, {})
                    newPart._rlnClassNumber = Integer(int(c.get("rlnClassNumber", 0)))
                    newPart._rlnMaxValueProbDistribution = Float(float(c.get("rlnMaxValueProbDistribution", 0.0)))
                unusedSet.append(newPart)
        if nMissing:
            self.warning(f"{nMissing} input particles are in neither particles.star nor unused.star of the job: "
                         "they are returned as unused")

        vol = Volume()
        vol.setFileName(self._getJobDir(C.OUT_MAP))
        vol.setSamplingRate(float(result.get("apix", apix)))
        vol.setHalfMaps([self._getJobDir(C.OUT_HALF_A), self._getJobDir(C.OUT_HALF_B)])
        vol.setObjComment("average of the two gold-standard half-maps")

        fsc = FSC(objLabel=f"FSC ({C.FSC_GOLD}: {result.get('resolution_A', float('nan')):.2f} A)")
        freq, values = self._readFsc()
        fsc.setData(freq.tolist(), values.tolist())
        # every curve of the job's gold-standard FSC, labelled as RELION's postprocess labels them
        fscs = self._createSetOfFSCs()
        for column, label in C.FSC_CURVES:
            freq, values = self._readFsc(column)
            curve = FSC(objLabel=label)
            curve.setData(freq.tolist(), values.tolist())
            fscs.append(curve)
        fscs.write()

        self._defineOutputs(outputParticles=outSet, outputVolume=vol, outputFSC=fsc, outputFSCs=fscs)
        self._defineTransformRelation(self.inputParticles, outSet)
        self._defineSourceRelation(self.inputParticles, vol)
        self._defineSourceRelation(self.inputParticles, fsc)
        self._defineSourceRelation(self.inputParticles, fscs)
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
        # every bound and every check on the data, from the engine's parameter table, on the options this form
        # gives the job (the engine's messages name fields; the form's user knows the labels)
        from ..cli import job_params_from_args
        from ..engine import bounds

        try:
            p = job_params_from_args(self._getJobArgs() + self._getComputeArgs())
        except SystemExit:  # argparse refused a value (it printed why)
            return errors + ["A parameter value could not be read: check the numeric fields."]
        found = bounds.check(p)
        if box is not None:
            found += jobparams.data_errors(p, box, parts.getSamplingRate(),
                                           jobparams.n_used(p.num_particles, parts.getSize()))
        for f, _ in jobparams.table():
            found = [e.replace(f" ({f.name})", "") for e in found]
        return errors + found

    def _warnings(self):
        """Settings that will probably fail or mislead (the user may still go on)."""
        warnings = []
        parts = self.inputParticles.get()
        if parts is None:
            return warnings
        n = jobparams.n_used(self.numParticles.get() or 0, parts.getSize())
        if n // 2 < jobparams.FEW_PER_HALF:
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
                       f"aligned up to {self.alignRes.get():g} A, symmetry {self._symmetry()}")
        return summary

    def _methods(self):
        if not hasattr(self, "outputVolume"):
            return []
        result = self._readResult()
        res = f" to {result['resolution_A']:.2f} A" if result else ""
        sym = "" if self._symmetry() == "C1" else f", imposing {self._symmetry()} symmetry"
        return [f"An initial 3D map was obtained{res} from {self.getObjectTag('inputParticles')} by homogeneous "
                "ab-initio refinement (stochastic gradient descent from random starts as in CryoSPARC "
                f"[Punjani2017], {self.numStarts.get()} per half with the most likely kept, run independently on two "
                "random half-sets that were aligned to each other only "
                f"below {self.alignRes.get():g} A){sym}. The resolution was estimated by the gold-standard FSC at "
                "0.143 with phase-randomisation correction [Chen2013]."]

    def _citations(self):
        return ["Punjani2017", "Kim2025", "Chen2013", "AbInitRefine"]
