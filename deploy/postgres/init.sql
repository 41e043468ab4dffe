-- One database per service (each service owns its own; none reads another's
-- tables). Run once by the postgres image on an empty data volume, as the
-- POSTGRES_USER of deploy/compose.yaml, who then owns them.
CREATE DATABASE product;
CREATE DATABASE cart;
CREATE DATABASE inventory;
CREATE DATABASE payment;
CREATE DATABASE orders;
CREATE DATABASE checkout;
