#!/usr/bin/env bash
# Virtual environments for the fine-tuning tools whose pins clash with lmtune's (docs/tools.md), each with the
# CPU build of the pinned torch. Their tests (tests/integrations/test_tool_runs.py) run when the CLI is named:
#   scripts/tool_venvs.sh llamafactory && export LMTUNE_LLAMAFACTORY_CLI=$PWD/.venv-llamafactory/bin/llamafactory-cli
#   scripts/tool_venvs.sh axolotl && export LMTUNE_AXOLOTL_CLI=$PWD/.venv-axolotl/bin/axolotl
set -euo pipefail
tool=${1:?usage: scripts/tool_venvs.sh llamafactory|axolotl}
torch_pin=$(grep -E '^torch==' requirements.lock | head -1)
case "$tool" in
  llamafactory)
    venv=.venv-llamafactory
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "$torch_pin" "llamafactory==0.9.5"
    # its torchvision/torchaudio wheels are built for another torch (PyPI has no torchaudio for torch 2.13);
    # LLaMA-Factory imports torchaudio for its audio plugin only: text SFT runs with an empty module in its place
    "$venv/bin/pip" uninstall -y -q torchvision torchaudio || true
    site=$("$venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
    mkdir -p "$site/torchaudio"
    echo '"""Empty stand-in written by lmtune scripts/tool_venvs.sh (no torchaudio wheel for this torch)."""' \
      > "$site/torchaudio/__init__.py"
    "$venv/bin/llamafactory-cli" version | grep -q "LLaMA Factory" && echo "$venv/bin/llamafactory-cli";;
  axolotl)
    venv=.venv-axolotl
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "$torch_pin" "axolotl==0.19.0"
    "$venv/bin/axolotl" --help >/dev/null && echo "$venv/bin/axolotl";;
  *) echo "unknown tool $tool (llamafactory, axolotl)"; exit 2;;
esac
