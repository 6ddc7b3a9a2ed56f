# Shared by scripts/demo and scripts/test: a virtualenv with the pinned requirements, and a .env.

setup_venv() {
  local reqs="$1"
  if [ ! -x .venv/bin/python ]; then
    echo "creating .venv"
    python3 -m venv .venv
  fi
  local stamp=".venv/.installed-$(cat requirements*.txt | sha256sum | cut -c1-16)-${reqs}"
  if [ ! -f "$stamp" ]; then
    install_requirements "$reqs"
    touch "$stamp"
  fi
  # The order gate's check, compiled with Cython; a no-op when rules/checks.py is unchanged. It
  # never fails the setup: without a compiler it warns once and the pure-Python module runs.
  .venv/bin/python scripts/build_checks.py || echo "warning: scripts/build_checks.py failed; the gate runs the pure-Python check" >&2
}

install_requirements() {
  local reqs="$1"
  .venv/bin/python -m pip install -q --upgrade pip
  if ! .venv/bin/python -m pip install -q -r "$reqs"; then
    # mysqlclient compiles against libmysqlclient; the embedded demo does not need it.
    echo "note: installing without mysqlclient (MySQL needs: apt-get install pkg-config default-libmysqlclient-dev)" >&2
    mkdir -p var
    grep -v '^mysqlclient' requirements.txt > var/requirements-nomysql.txt
    sed 's#^-r requirements.txt#-r requirements-nomysql.txt#' "$reqs" > var/requirements-run.txt
    (cd . && .venv/bin/python -m pip install -q -r var/requirements-run.txt)
  fi
}

ensure_env_file() {
  if [ ! -f .env ]; then
    echo "writing .env with fresh secrets (kept out of git)"
    .venv/bin/python - <<'PY'
import secrets
from cryptography.fernet import Fernet
with open(".env", "w") as f:
    f.write(f"SECRET_KEY={secrets.token_urlsafe(50)}\n")
    f.write(f"FIELD_ENCRYPTION_KEY={Fernet.generate_key().decode()}\n")
PY
  fi
}
