"""Form helpers: window/mask diameter from the particle box, maximum resolution at Nyquist."""
from pwem.wizards import EmWizard

from .. import constants as C
from ..protocols import ProtAbInitioRefine


def mask_diameter_A(particles, fraction=C.MASK_DIAMETER_FRACTION) -> float:
    """Window diameter (A) the engine uses automatically: ``fraction`` of the box extent, to 0.1 A."""
    box = particles.getXDim()
    apix = particles.getSamplingRate()
    return round(float(box) * float(apix) * fraction, 1)


def nyquist_A(particles) -> float:
    """Nyquist resolution (A) of the particles: 2 x pixel size, rounded up to 0.01 A."""
    return float(int(2.0 * particles.getSamplingRate() * 100.0 + 0.999999)) / 100.0


class _InputParticlesWizard(EmWizard):
    """Common part: take the input particles of the form, warn when none are selected."""

    def _particles(self, form):
        particles = form.protocol.inputParticles.get()
        if particles is None:
            form.showWarning("Select the input particles first.")
        return particles


class AbInitRefineMaskDiameterWizard(_InputParticlesWizard):
    """Proposes the window/mask diameter: 85% of the box extent (box x pixel size)."""

    _targets = [(ProtAbInitioRefine, ["maskDiameter"])]

    def show(self, form, *params):
        particles = self._particles(form)
        if particles is not None:
            form.setVar("maskDiameter", mask_diameter_A(particles))


class AbInitRefineNyquistWizard(_InputParticlesWizard):
    """Sets the maximum resolution to Nyquist (2 x pixel size), the finest the data allow."""

    _targets = [(ProtAbInitioRefine, ["maxRes"])]

    def show(self, form, *params):
        particles = self._particles(form)
        if particles is not None:
            form.setVar("maxRes", nyquist_A(particles))
