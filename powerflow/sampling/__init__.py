"""Inference-time sampling methods: each returns a `powerflow.eval.evaluate.SampleBatch`.

Modules:
    mcmc         MCMC power sampling toward p_base^α (Karan & Du 2025): `MCMCConfig`,
                 `mcmc_power_sample`, `mcmc_sampler` (a `Sampler` for `evaluate_model`).
    smc          Power-SMC, sequential Monte Carlo toward p_base^α (arXiv:2602.10273): `SMCConfig`,
                 `power_smc_sample`, `smc_sampler`; `path_log_weights` is its weight identity.
    verbalized   verbalized sampling (the model is asked for several answers with probabilities).

Nothing is imported here: import the module you need (`from powerflow.sampling.mcmc import ...`),
so importing the package stays free of torch and transformers.
"""
