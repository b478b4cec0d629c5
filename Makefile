# The README's two commands: `make run` and `make test`. Both install what is missing first.
BUILD_DIR ?= build
CONFIG ?= config/terse.yaml
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: all bootstrap configure build run test bench model clean

all: build

bootstrap:
	@bash tools/bootstrap.sh

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS)

configure: $(BUILD_DIR)/build.ninja

build: bootstrap configure
	cmake --build $(BUILD_DIR) -j $(JOBS)

run: build
	$(BUILD_DIR)/proxy/terse serve --config $(CONFIG)

test: build
	cd $(BUILD_DIR) && ctest --output-on-failure --timeout 900

bench: build
	bash bench/run.sh

clean:
	rm -rf $(BUILD_DIR)
