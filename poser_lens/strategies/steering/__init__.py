"""The steering sweep behind strategies 1 and 2, one module per job.

S1 (:mod:`~poser_lens.strategies.s1_belief`) and S2 (:mod:`~poser_lens.strategies.s2_noise`)
are one sweep, :func:`~poser_lens.strategies.steering.sweep.steering_sweep`, specialised by a
small :class:`~poser_lens.strategies.steering.sweep.Steering` spec:

- :mod:`~poser_lens.strategies.steering.sweep`: the shared config
  (:class:`~poser_lens.strategies.steering.sweep.SweepConfig`), the generic score and
  restriction, and :class:`~poser_lens.strategies.steering.sweep.SteeringStrategy`;
- :mod:`~poser_lens.strategies.steering.engine`: the packed engine
  (:func:`~poser_lens.strategies.steering.engine.variant_readout`), every variant of a prompt
  in one forward, its interventions :mod:`poser_lens.hooks` objects;
- :mod:`~poser_lens.strategies.steering.outcomes`: the outcome maths (four outcomes,
  log-odds, KL);
- :mod:`~poser_lens.strategies.steering.scores`: the score types and the variant axis's layout
  (:data:`~poser_lens.strategies.steering.scores.VARIANT_AXIS`, named once, with einops);
- :mod:`~poser_lens.strategies.steering.directions`: the memoised contrast directions;
- :mod:`~poser_lens.strategies.steering.curves`: the curve readers (rises, the label-free
  coefficient, the equal-KL strength).

The cost model's declaration of the sweep's work is in :mod:`poser_lens.cost.passes`
(``steering_work``). :mod:`poser_lens.strategies.variants` keeps the old import path.
"""
