# The riskdesk image: web, worker, beat, streams and the one-off migrate/certs jobs (docker-compose.yml).
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends pkg-config default-libmysqlclient-dev \
      build-essential curl && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
# .dockerignore keeps .env, var/ and .venv out: secrets come from the environment at run time.
COPY . .
# The order gate's check, compiled with Cython (scripts/build_checks.py). Here it must succeed: the
# image has the compiler, and a silent fallback to pure Python would slow every order check.
RUN python scripts/build_checks.py --require
RUN SECRET_KEY=build FIELD_ENCRYPTION_KEY=YnVpbGQtb25seS1mZXJuZXQta2V5LTMyLWJ5dGVzISE= \
      python manage.py collectstatic --no-input
