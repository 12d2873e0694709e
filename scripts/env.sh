# Sourced by the scripts under scripts/: the environment the Makefile exports (the project's
# virtualenv first on PATH, its ansible.cfg, LiteLLM offline), so that every script runs as
# written from a shell where the virtualenv is not activated.
_env_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case ":$PATH:" in
  *":$_env_root/.venv/bin:"*) ;;
  *) export PATH="$_env_root/.venv/bin:$PATH" ;;
esac
export ANSIBLE_CONFIG=${ANSIBLE_CONFIG:-$_env_root/ansible.cfg}
export LITELLM_LOCAL_MODEL_COST_MAP=${LITELLM_LOCAL_MODEL_COST_MAP:-True}
export LITELLM_OFFLINE_MODE=${LITELLM_OFFLINE_MODE:-true}
unset _env_root
