"""Who may do what: roles per action from a policy file or MLflow's own permissions."""
