"""Many runs: ablation files, planning a sweep, the pool of GPU slots, the engines that execute runs
(local, Slurm, Ray) and the hyperparameter search."""
