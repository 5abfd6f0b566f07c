"""Pure drawing functions: data in, `matplotlib.figure.Figure` out.

Each ``draw_<name>(data)`` draws what an experiment of `adamflow.experiments` computed; it
runs no experiment, writes no file and never touches pyplot or the matplotlib backend
(figures are made with ``matplotlib.figure.Figure``). `adamflow.experiments.make_figure`
runs an experiment, draws it and writes the PNG with its JSON sidecar.

Modules (imported on demand; ``import adamflow`` does not load matplotlib):

- `adamflow.plotting.phase`: phase diagrams of Adam's (β₁, β₂) (theory/stability.md);
- `adamflow.plotting.convergence`: flows against the discrete optimizer
  (theory/adam.md, theory/corrected_flow.md): `draw_trajectories`, `draw_convergence`;
- `adamflow.plotting.kadam`: k-Adam and the meta-adaptive effect (theory/kadam.md):
  `draw_meta_adaptive`, `draw_kadam_stability`, `draw_kadam_training`,
  `draw_phase_accuracy`.
"""

__all__: list[str] = []  # the drawing functions live in the submodules named above
