# terse on Debian 12: the same bootstrap and build as `make run`.
FROM debian:12 AS build
WORKDIR /src
COPY . .
RUN bash tools/bootstrap.sh && cmake -S . -B build -G Ninja -DTERSE_BUILD_TESTS=OFF \
      -DTERSE_BUILD_BENCH=OFF -DCMAKE_BUILD_TYPE=Release && cmake --build build --target terse

FROM debian:12
RUN apt-get update -qq && apt-get install -y -qq --no-install-recommends \
      libgrpc++1.51 libprotobuf32 libcurl4 libyaml-cpp0.7 libtorch1.13 libopenblas0-openmp \
      libpcre2-8-0 libjemalloc2 ca-certificates && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/terse
COPY --from=build /src/build/proxy/terse /usr/local/bin/terse
COPY --from=build /src/models ./models
COPY --from=build /src/config ./config
ENV TERSE_HOST=0.0.0.0
EXPOSE 8080 50051
ENTRYPOINT ["terse", "serve", "--config", "config/terse.yaml"]
