# Shared helpers for the project's scripts. Source it; do not run it.

# Installs Debian packages that are not installed yet. apt-get update runs at most once per
# call, and a failed install is retried once (a first install on a fresh machine sometimes
# fails on a half-downloaded archive and then succeeds).
apt_install() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  [ "${#missing[@]}" -eq 0 ] && return 0
  echo "installing Debian packages: ${missing[*]}"
  local sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    || DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
}

# Fails loudly when the Rust toolchain is missing: Debian's own cargo is too old for this
# workspace (edition 2024), so it must come from rustup.
require_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    echo "error: cargo is not installed. Install a Rust toolchain >= 1.88 with rustup" >&2
    echo "       (https://rustup.rs), then run this again." >&2
    exit 1
  fi
}
