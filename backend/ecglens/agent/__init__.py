"""The RL explainer: a learned policy places realistic distortions on a segment grid until the diagnosis flips.

Modules: `grid` (cells and their signal features), `env` (episode state, actions, reward, vectorised env),
`policy` (the network), `buffer` + `ppo` + `train` (PPO training), `search` (inference: `explain`),
`localize` (the dropout sensitivity that ranks segments), `redraw` (quieter flips by redrawn noise),
`greedy` (the greedy sensitivity scan), `cli` (``ecglens explain | robustness | train-agent``).
"""
