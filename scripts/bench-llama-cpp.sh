#!/usr/bin/env bash
# Measures llama.cpp's own speed on a model and prompt, with no Rust binding in between,
# so the embedded provider's numbers (vtuber-bench) can be compared against it.
#
# Usage: scripts/bench-llama-cpp.sh MODEL PROMPT N
#
#   MODEL   GGUF file
#   PROMPT  user message; wrapped in the model's chat template like the daemon does
#   N       tokens to generate at most (greedy decoding, stops early at end-of-generation)
#
# Environment:
#   THREADS     inference threads (default: all cores)
#   BUILD_TYPE  CMake build type (default: the one llama-cpp-sys-2 used in target/, so
#               both sides run the same compiled code; Release if none is found)
#   CHAT=0      feed PROMPT raw instead of through the chat template
#   LLAMA_SRC   llama.cpp source tree (default: the one vendored in llama-cpp-sys-2 from
#               Cargo.lock in ~/.cargo/registry)
#
# The vendored tree ships llama.cpp's libraries but not its tools (llama-simple,
# llama-bench), so this builds the libraries with CMake into target/llama-cpp-native
# (cached) and links a small C++ driver against the plain C API. The driver times the
# same phases the Rust bench does: prompt evaluation up to the first sampled token, then
# the gaps between generated tokens.
set -euo pipefail

if [[ $# -ne 3 ]]; then
    echo "usage: $0 MODEL PROMPT N" >&2
    exit 2
fi
MODEL=$1
PROMPT=$2
N=$3
if [[ ! -f "$MODEL" ]]; then
    echo "error: model file not found: $MODEL" >&2
    exit 1
fi
if ! [[ "$N" =~ ^[0-9]+$ ]] || [[ "$N" -lt 2 ]]; then
    echo "error: N must be an integer >= 2" >&2
    exit 2
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT="$ROOT/target/llama-cpp-native"
THREADS=${THREADS:-$(nproc)}
CHAT=${CHAT:-1}

# The llama.cpp version the Rust binding links, from Cargo.lock.
if [[ -z "${LLAMA_SRC:-}" ]]; then
    SYS_VERSION=$(awk '/^name = "llama-cpp-sys-2"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$ROOT/Cargo.lock")
    if [[ -z "$SYS_VERSION" ]]; then
        echo "error: llama-cpp-sys-2 not found in Cargo.lock; set LLAMA_SRC" >&2
        exit 1
    fi
    LLAMA_SRC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"llama-cpp-sys-2-$SYS_VERSION"/llama.cpp 2>/dev/null | head -n 1 || true)
    if [[ -z "$LLAMA_SRC" ]]; then
        echo "error: llama-cpp-sys-2 $SYS_VERSION sources not in the cargo registry; run cargo fetch or set LLAMA_SRC" >&2
        exit 1
    fi
fi

# Use the ggml CPU options the binding was built with (see llama-cpp-sys-2's build.rs),
# so a difference in speed is the binding's and not the compiler flags'.
SYS_CACHE=$(ls -t "$ROOT"/target/*/build/llama-cpp-sys-2-*/out/build/CMakeCache.txt 2>/dev/null | head -n 1 || true)
CMAKE_FLAGS=()
if [[ -n "$SYS_CACHE" ]]; then
    while IFS= read -r line; do
        CMAKE_FLAGS+=("-D${line%%:*}=${line#*=}")
    done < <(grep -E '^GGML_(NATIVE|AVX|AVX2|AVX512|AVX512_BF16|AVX512_VBMI|AVX512_VNNI|AVX_VNNI|BMI2|F16C|FMA|SSE42|OPENMP|CPU_REPACK|LLAMAFILE):BOOL=' "$SYS_CACHE")
    DEFAULT_BUILD_TYPE=$(sed -n 's/^CMAKE_BUILD_TYPE:STRING=//p' "$SYS_CACHE")
    echo "mirroring ggml options from $SYS_CACHE" >&2
else
    CMAKE_FLAGS+=("-DGGML_NATIVE=ON")
    echo "no llama-cpp-sys-2 build in target/; building with GGML_NATIVE=ON" >&2
fi
BUILD_TYPE=${BUILD_TYPE:-${DEFAULT_BUILD_TYPE:-Release}}

mkdir -p "$OUT/driver"
cat >"$OUT/driver/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.14)
project(llama-speed CXX C)
add_subdirectory("$LLAMA_SRC" llama.cpp EXCLUDE_FROM_ALL)
add_executable(llama-speed main.cpp)
target_link_libraries(llama-speed PRIVATE llama)
target_compile_features(llama-speed PRIVATE cxx_std_17)
EOF

cat >"$OUT/driver/main.cpp.new" <<'EOF'
// Greedy generation through llama.cpp's C API, timed like the Rust bench.
#include "llama.h"

#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

static void errors_only(enum ggml_log_level level, const char *text, void *) {
    if (level == GGML_LOG_LEVEL_ERROR) {
        fputs(text, stderr);
    }
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s MODEL PROMPT N THREADS CHAT\n", argv[0]);
        return 2;
    }
    const char *model_path = argv[1];
    std::string prompt = argv[2];
    const int n_predict = atoi(argv[3]);
    const int n_threads = atoi(argv[4]);
    const bool chat = atoi(argv[5]) != 0;

    llama_log_set(errors_only, nullptr);
    ggml_backend_load_all();
    llama_backend_init();

    llama_model_params mparams = llama_model_default_params();
    mparams.n_gpu_layers = 0;
    llama_model *model = llama_model_load_from_file(model_path, mparams);
    if (model == nullptr) {
        fprintf(stderr, "error: cannot load %s\n", model_path);
        return 1;
    }
    const llama_vocab *vocab = llama_model_get_vocab(model);

    if (chat) {
        const char *tmpl = llama_model_chat_template(model, nullptr);
        llama_chat_message msg = {"user", prompt.c_str()};
        std::vector<char> buf(prompt.size() * 2 + 256);
        int n = llama_chat_apply_template(tmpl ? tmpl : "chatml", &msg, 1, true, buf.data(), (int32_t)buf.size());
        if (n < 0) {
            n = llama_chat_apply_template("chatml", &msg, 1, true, buf.data(), (int32_t)buf.size());
        }
        if (n > (int)buf.size()) {
            buf.resize(n);
            n = llama_chat_apply_template(tmpl ? tmpl : "chatml", &msg, 1, true, buf.data(), (int32_t)buf.size());
        }
        if (n < 0) {
            fprintf(stderr, "error: cannot apply the chat template\n");
            return 1;
        }
        prompt.assign(buf.data(), n);
    }

    const int n_prompt = -llama_tokenize(vocab, prompt.c_str(), (int32_t)prompt.size(), nullptr, 0, true, true);
    std::vector<llama_token> tokens(n_prompt);
    if (llama_tokenize(vocab, prompt.c_str(), (int32_t)prompt.size(), tokens.data(), (int32_t)tokens.size(), true, true) < 0) {
        fprintf(stderr, "error: cannot tokenize the prompt\n");
        return 1;
    }

    llama_context_params cparams = llama_context_default_params();
    cparams.n_ctx = n_prompt + n_predict;
    cparams.n_batch = n_prompt;
    cparams.n_threads = n_threads;
    cparams.n_threads_batch = n_threads;
    cparams.no_perf = false;
    llama_context *ctx = llama_init_from_model(model, cparams);
    if (ctx == nullptr) {
        fprintf(stderr, "error: cannot create a context\n");
        return 1;
    }

    llama_sampler_chain_params sparams = llama_sampler_chain_default_params();
    llama_sampler *smpl = llama_sampler_chain_init(sparams);
    llama_sampler_chain_add(smpl, llama_sampler_init_greedy());

    std::string text;
    int n_generated = 0;
    const int64_t t_start = ggml_time_us();
    int64_t t_first = 0;
    int64_t t_last = 0;
    llama_batch batch = llama_batch_get_one(tokens.data(), (int32_t)tokens.size());
    llama_token tok;
    for (;;) {
        if (llama_decode(ctx, batch) != 0) {
            fprintf(stderr, "error: llama_decode failed\n");
            return 1;
        }
        tok = llama_sampler_sample(smpl, ctx, -1);
        if (llama_vocab_is_eog(vocab, tok)) {
            break;
        }
        char piece[256];
        const int n = llama_token_to_piece(vocab, tok, piece, sizeof piece, 0, false);
        if (n > 0) {
            text.append(piece, n);
        }
        n_generated++;
        t_last = ggml_time_us();
        if (n_generated == 1) {
            t_first = t_last;
        }
        if (n_generated >= n_predict) {
            break;
        }
        batch = llama_batch_get_one(&tok, 1);
    }

    const double prompt_s = (t_first - t_start) / 1e6;
    const double gen_s = (t_last - t_first) / 1e6;
    const llama_perf_context_data perf = llama_perf_context(ctx);
    printf("reply: %s\n", text.c_str());
    printf("threads: %d\n", n_threads);
    printf("prompt: %d tokens in %.3f s = %.1f tokens/s\n", n_prompt, prompt_s, n_prompt / prompt_s);
    if (n_generated > 1) {
        printf("generation: %d tokens in %.3f s = %.1f tokens/s\n", n_generated - 1, gen_s, (n_generated - 1) / gen_s);
    } else {
        printf("generation: too few tokens to time\n");
    }
    printf("llama_perf: prompt eval %.1f tokens/s (%d tokens), eval %.1f tokens/s (%d tokens)\n",
           1e3 * perf.n_p_eval / perf.t_p_eval_ms, perf.n_p_eval,
           perf.t_eval_ms > 0 ? 1e3 * perf.n_eval / perf.t_eval_ms : 0.0, perf.n_eval);

    llama_sampler_free(smpl);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    return 0;
}
EOF
# Keep the file's timestamp when unchanged, so the cached build stays cached.
if cmp -s "$OUT/driver/main.cpp.new" "$OUT/driver/main.cpp"; then
    rm "$OUT/driver/main.cpp.new"
else
    mv "$OUT/driver/main.cpp.new" "$OUT/driver/main.cpp"
fi

cmake -S "$OUT/driver" -B "$OUT/build" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
    -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_TOOLS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF \
    "${CMAKE_FLAGS[@]}" >"$OUT/cmake-configure.log" 2>&1 || {
    cat "$OUT/cmake-configure.log" >&2
    exit 1
}
cmake --build "$OUT/build" --target llama-speed -j "$(nproc)" >"$OUT/cmake-build.log" 2>&1 || {
    tail -n 50 "$OUT/cmake-build.log" >&2
    exit 1
}

echo "llama.cpp native ($BUILD_TYPE, $LLAMA_SRC)"
"$OUT/build/llama-speed" "$MODEL" "$PROMPT" "$N" "$THREADS" "$CHAT"
