"""The real pipeline engine: a toy GPT trained by one process per rank, measured.

What it teaches: the schedules of ``pplab.schedules`` executed on ``torch.distributed``
(gloo on CPU, NCCL on GPUs), with every action, message and wait recorded as Event rows on
one clock. Import the pieces from their modules (``pplab.engine.launch.run_training``,
``pplab.engine.model.ToyGPT``, ...); this package itself imports no torch.

    pplab train --schedule gpipe --pp 2 --microbatches 8 --steps 10
"""
