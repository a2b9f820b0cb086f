-- CASCADE takes with it whatever depends on the column (indexes, constraints, views).
SET LOCAL lock_timeout = '5s';
ALTER TABLE "Product" DROP COLUMN "version" CASCADE;
