"""The RL explainer: a learned policy places realistic distortions on a segment grid until the diagnosis flips.

Modules: `grid` (cells and their signal features), `env` (episode state, actions, reward, vectorised env),
`policy` (the network), `buffer` + `ppo` + `train` (PPO training), `search` (inference: `explain`),
`greedy` (the greedy sensitivity scan fallback), `cli` (``ecglens explain | robustness | train-agent``).
"""
