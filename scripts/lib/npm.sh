# Sourced by the checks that run npm tools (typescript-client-check.sh, dashboard-check.sh):
# `npm_deps <label> <folder with package.json and package-lock.json> <name>` installs the lock
# file's exact versions with `npm ci` into ${KEYWARD_CACHE_DIR:-~/.cache/keyward}/<name>-<hash of
# the lock file>, once, never into the repository, and sets DEPS to that folder.
npm_deps() {
    local label="$1" dir="$2" name="$3"
    local cache="${KEYWARD_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/keyward}"
    DEPS="$cache/$name-$(sha256sum "$dir/package-lock.json" | cut -c1-16)"
    # The marker is written last, so an interrupted install is never taken for a finished one.
    if [[ ! -f "$DEPS/.installed" ]]; then
        echo "$label: npm ci (${dir#"$ROOT/"}/package-lock.json) into $DEPS"
        rm -rf "$DEPS"
        mkdir -p "$DEPS"
        cp "$dir/package.json" "$dir/package-lock.json" "$DEPS/"
        # No install scripts run: none of the pinned packages needs one.
        (cd "$DEPS" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
        touch "$DEPS/.installed"
    fi
}
