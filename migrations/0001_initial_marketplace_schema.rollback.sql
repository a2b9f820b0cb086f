DROP TABLE "OrderItem";
DROP TABLE "Order";
DROP TABLE "CartItem";
DROP TABLE "Product";
DROP TABLE "User";
