"""Training-time baselines: GRPO with gold answers and EMPO's semantic-entropy reward, on TRL.

Modules:
    config     BaselinesConfig, the `baselines:` section of params.yaml
    rewards    reward functions in TRL's form: `accuracy_reward` (GRPO), `empo_reward` (EMPO) and
               their parts (`cluster_answers`, `semantic_entropy`, `empo_rewards`); answers are read,
               graded and compared by each family's answer kind (powerflow.eval.grading)
    trainers   `baseline_trainer` (a trl.GRPOTrainer per method), `recipe` (the settings recorded)

Nothing is imported here: import the module you need (`from powerflow.baselines.rewards import ...`),
so importing the package stays free of torch and transformers.
"""
