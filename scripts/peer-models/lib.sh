# Sourced by run.sh and q4_0.sh (after `root` is set): what both need before scoring.

# A venv at $1 where llama_cpp imports, building llama-cpp-python from its source package
# into it when it does not (minutes).
ensure_llama_venv() {
    local venv="$1"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import llama_cpp" 2>/dev/null; then
        echo "peer-models: building llama-cpp-python from its source package into $venv (minutes)" >&2
        python3 -m venv "$venv"
        CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF}" \
            "$venv/bin/pip" install --quiet --no-binary llama-cpp-python -r "$root/scripts/peer-quant/requirements.txt"
    fi
}

# Prints the runner to use: $1 when given, else the workspace's dev build (built first).
runner_path() {
    if [ -n "$1" ]; then
        echo "$1"
    else
        (cd "$root" && cargo build --quiet -p runner)
        echo "$root/target/debug/runner"
    fi
}
