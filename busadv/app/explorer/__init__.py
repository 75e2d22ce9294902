"""The perturbation explorer's page, shaped like its screen: the first screen, then one module per section below it.

- stage: the first screen as one component (pictures, probabilities, a client-side epsilon slider; the pickers)
- presenter: presenter mode, the first screen larger in four steps
- closer: the closer look at one epsilon (amplified change, Grad-CAM, attention numbers, exports)
- strip: the same image at several epsilons, and the probabilities as epsilon grows
- compare: a second model on the same image (white-box or transfer)
- original: the stored file at its own resolution beside the model's input
- test_set: the pointing game over all held-out images
- choices: the attack picker, deep links, widget state kept across modes, the wait for a first model
- probes: the shared per-model-and-image caches every section reads
"""
