"""busadv: see and measure how adversarial perturbations change breast-ultrasound diagnoses."""

__version__ = "0.1.0"
