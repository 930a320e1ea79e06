"""The settings search's ranking and its hand-off to the preset evaluation."""

from experiments import search_settings


def _trial(i, top1_orig, top1_photo, div_orig, div_photo, **extra):
  return {'trial': i, 'top1_original': top1_orig, 'top1_photo': top1_photo,
          'diversity_original': {'mean': div_orig}, 'diversity_photo': {'mean': div_photo},
          **extra}


def test_collapsed_seeds_rank_last_then_the_worse_convention_decides():
  trials = [_trial(0, 1.0, 1.0, 0.5, 0.9),    # perfect scores, but seeds collapse (stretch)
            _trial(1, 0.90, 0.99, 0.9, 0.9),  # worse convention 0.90
            _trial(2, 0.95, 0.93, 0.81, 0.85),  # worse convention 0.93
            _trial(3, 0.95, 0.93, 0.95, 0.95)]  # same scores as 2, more diverse
  assert [t['trial'] for t in search_settings.rank_trials(trials)] == [3, 2, 1, 0]
  # Nothing diverse enough: the scores decide among the collapsed ones.
  assert [t['trial'] for t in search_settings.rank_trials(trials[:2], 0.99)] == [0, 1]


def test_best_settings_keeps_only_the_method_settings():
  t = _trial(4, 1, 1, 1, 1, lr=2.5, iters=200, l2=0.99, bounds_k=3.0, method_args=None,
             dir='trial_04', wall_s=3.0)
  assert search_settings.best_settings('dgnam', t) == {
      'dgnam': {'lr': 2.5, 'iters': 200, 'l2': 0.99, 'bounds_k': 3.0}}
  t['method_args'] = 'tv=0.1'
  assert search_settings.best_settings('pixel_tv', t)['pixel_tv']['method_args'] == 'tv=0.1'
